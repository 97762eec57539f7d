/* Shared declarations of the softmaxkit kernels (see kernel_impl.h). */
#ifndef SOFTMAXKIT_KERNEL_H
#define SOFTMAXKIT_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#define SMK_MAX_DIMS 32
/* A row longer than this is processed in chunks (each pass reloads the chunk); a
 * shorter one is read once into a double scratch row (1 MiB at most per thread). */
#define SMK_CHUNK 131072
/* Rows processed together when the reduced axis is not the contiguous one. */
#define SMK_BLOCK 16
/* float32 blocks for the 16-lane path: 32 rows, two cache lines of each step. */
#define SMK_BLOCK_F32 32
#define SMK_BLOCK_MAX_LEN 4096
/* float32 or float64 column mode with many adjacent rows: blocks of at most this many
 * rows (one per thread where possible: each pass then reads long stretches of each
 * matrix row), whose entries are read as rows of the matrix, the rows' state (max, sums: 28 or 40
 * bytes a row) kept in the scratch, within L2. */
#define SMK_STREAM_ROWS 2048

enum { SMK_SOFTMAX = 0, SMK_LOG_SOFTMAX = 1, SMK_LOGSUMEXP = 2 };
enum { SMK_F32 = 0, SMK_F64 = 1, SMK_F16 = 2, SMK_BF16 = 3 };
enum { SMK_T_FINITE = 0, SMK_T_ZERO = 1, SMK_T_INF = 2 };

typedef struct {
    int op;
    int in_type, out_type, lse_type;
    int in_size, out_size;
    int compensate;            /* float64 input: keep the rounding error of x - max */
    int ndim;                  /* number of outer (row) dimensions */
    ptrdiff_t shape[SMK_MAX_DIMS];
    ptrdiff_t xs[SMK_MAX_DIMS], os[SMK_MAX_DIMS], ms[SMK_MAX_DIMS], ts[SMK_MAX_DIMS],
        ls[SMK_MAX_DIMS], gs[SMK_MAX_DIMS], bs[SMK_MAX_DIMS];
    ptrdiff_t n_rows, len;     /* rows and the length of the reduced axis */
    ptrdiff_t x_es, o_es, m_es; /* element strides along the reduced axis, in bytes */
    char *x, *o, *m, *t, *l;   /* data; m, t, o, l may be NULL */
    char *g;                   /* softmax: a factor per row (float64), or NULL */
    ptrdiff_t l_es;            /* l as (max, log-normalizer) pairs: their stride, else 0 */
    char *bsum;                /* logsumexp: sums of exp((x - max) / T) over blocks, or NULL */
    ptrdiff_t b_es, bsize;     /* the stride between those sums, and the block length */
    double t_value;            /* the scalar temperature when t is NULL */
    int block;                 /* rows per block in column mode, 0 in row mode */
    int stream;                /* column mode by streaming the reduced axis (block of
                                  SMK_STREAM_ROWS rows, each a column of the matrix) */
} smk_job;

/* Per-row state shared by the phases of a row processed in chunks. */
typedef struct {
    char *x, *o, *m, *l, *bsum;
    double temperature, gain;
    int tmode;
    /* phase 1 (min: the float32 path only) */
    double max, min;
    int has_nan;
    /* decision */
    int kind;
    /* phase 2 */
    double hi, lo;
    int64_t count;
    /* final */
    double log_total, scale;
    int post;
} smk_row;

typedef struct {
    double max, min, hi, lo; /* min: the float32 path only (+inf elsewhere) */
    int has_nan;
    int64_t count;
} smk_partial;

/* The soft cap of float32 logits (kernel_softcap.h), over rows of len entries, each
 * row contiguous: SMK_SOFTCAP_VALUES writes c * tanh(x / c) into o (float32);
 * SMK_SOFTCAP_SCALE multiplies o (float32, the gradient) by 1 - tanh(x / c)^2;
 * SMK_SOFTCAP_DERIVATIVE writes that derivative into o (float64); SMK_SOFTCAP_BOTH
 * writes the capped logits into o and the derivative into d (float64);
 * SMK_SOFTCAP_SCALE_BY multiplies o by x, float64 (a derivative so written). */
enum {
    SMK_SOFTCAP_VALUES = 0,
    SMK_SOFTCAP_SCALE = 1,
    SMK_SOFTCAP_DERIVATIVE = 2,
    SMK_SOFTCAP_BOTH = 3,
    SMK_SOFTCAP_SCALE_BY = 4
};

typedef struct {
    smk_job base; /* zeroed: what the pool reads of a work item's job (its scratch) */
    int mode;
    const char *x;
    char *o, *d;
    ptrdiff_t n_rows, len, x_rs, o_rs, d_rs; /* row strides in bytes */
    double cap;
} smk_softcap;

typedef struct {
    void (*run_tasks)(const smk_job *, ptrdiff_t, ptrdiff_t, double *);
    void (*row_begin)(const smk_job *, ptrdiff_t, smk_row *);
    void (*row_phase)(const smk_job *, smk_row *, int, ptrdiff_t, ptrdiff_t, double *,
                      smk_partial *);
    void (*row_decide)(const smk_job *, smk_row *, const smk_partial *);
    void (*row_sums)(const smk_job *, smk_row *, const smk_partial *);
    /* the entries e0 .. e1 - 1 of a soft-cap job, counted row after row */
    void (*softcap_range)(const smk_softcap *, ptrdiff_t, ptrdiff_t);
} smk_impl;

ptrdiff_t smk_scratch_doubles(const smk_job *job);
/* Blocks taken by the streaming column mode (for the tests). */
extern long long smk_streamed_blocks_count;
ptrdiff_t smk_n_tasks(const smk_job *job);

extern const smk_impl smk_impl_baseline;
#if defined(SMK_HAVE_AVX2)
extern const smk_impl smk_impl_avx2;
#endif
#if defined(SMK_HAVE_AVX512)
extern const smk_impl smk_impl_avx512;
#endif

#endif
