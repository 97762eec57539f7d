/* Column mode for float16 and bfloat16: the rows of a block (adjacent in memory: entry
 * j of row b at x + b * 2 + j * x_es) gathered and widened exactly into float32 rows,
 * each computed by the float32 passes of kernel_rows_small.h (or, where they decline,
 * by the double road of kernel_buffer.h on the same values), rounded once to the
 * small format into a transposing buffer, and scattered back.
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h) after kernel_side_by_side.h; not a header of its own. */

static int small_columns_job(const smk_job *job)
{
    return (job->in_type == SMK_F16 || job->in_type == SMK_BF16) && job->block &&
           job->block <= SMK_BLOCK && !job->bsum &&
           (job->op == SMK_LOGSUMEXP || job->out_type == SMK_F16 || job->out_type == SMK_BF16);
}

/* Entry j of the nb rows into x32[b * stride + j], widened: 16 entries at a time where
 * the rows are adjacent. */
static inline __attribute__((always_inline)) void
small_columns_gather_as(const smk_job *job, const smk_row *rows, ptrdiff_t nb, int type,
                        float *x32, ptrdiff_t stride)
{
    ptrdiff_t n = job->len, es = job->x_es, xb = job->xs[job->ndim - 1];
    const char *x = rows[0].x;
    for (ptrdiff_t j = 0; j < n; j++) {
        uint16_t v[SMK_BLOCK] = {0};
        float f[SMK_BLOCK];
        if (xb == 2) {
            memcpy(v, x + j * es, (size_t)nb * 2);
        } else {
            for (ptrdiff_t b = 0; b < nb; b++)
                memcpy(&v[b], rows[b].x + j * es, 2);
        }
        widen_contiguous_as((const char *)v, type, SMK_BLOCK, f);
        for (ptrdiff_t b = 0; b < nb; b++)
            x32[b * stride + j] = f[b];
    }
}

/* One block of nb <= SMK_BLOCK rows (buf: SMK_BLOCK * round4(len) + 8 doubles: the
 * widened rows, one row's float32 results, the small-format results of every row and
 * one row of doubles). */
static void small_column_block(const smk_job *job, smk_row *rows, ptrdiff_t nb, double *buf)
{
    ptrdiff_t n = job->len, stride = round4(n);
    float *x32 = (float *)(void *)buf;          /* SMK_BLOCK * stride floats */
    float *o32 = x32 + SMK_BLOCK * stride;      /* stride floats */
    uint16_t *res = (uint16_t *)(void *)(o32 + stride); /* SMK_BLOCK * stride entries */
    double *dbuf = (double *)(void *)(res + SMK_BLOCK * stride); /* stride doubles */
    if (job->in_type == SMK_F16)
        small_columns_gather_as(job, rows, nb, SMK_F16, x32, stride);
    else
        small_columns_gather_as(job, rows, nb, SMK_BF16, x32, stride);
    for (ptrdiff_t b = 0; b < nb; b++) {
        smk_row *row = &rows[b];
        float *xr = x32 + b * stride;
        if (row->m)
            for (ptrdiff_t j = 0; j < n; j++)
                if (!row->m[j * job->m_es])
                    xr[j] = -INFINITY;
        smk_partial part;
        partial_init(&part);
        F32_STATS(xr, n, &part);
        row_decide(job, row, &part);
        char *out = (char *)(res + b * stride);
        if (f32_row_ok(row)) {
            partial_init(&part);
            small_passes(job, row, 0, xr, o32, n, 0, out, &part);
            continue;
        }
        /* the double road, on the same (exactly widened, masked) values */
        for (ptrdiff_t j = 0; j < n; j++)
            dbuf[j] = xr[j];
        pad(dbuf, n);
        row_in_buffer(job, row, dbuf, n, 0);
        if (job->op != SMK_LOGSUMEXP)
            for (ptrdiff_t j = 0; j < n; j++)
                store_one(out + 2 * j, job->out_type, dbuf[j]);
    }
    if (job->op == SMK_LOGSUMEXP)
        return;
    ptrdiff_t es = job->o_es, ob = job->os[job->ndim - 1];
    char *o = rows[0].o;
    for (ptrdiff_t j = 0; j < n; j++) {
        uint16_t v[SMK_BLOCK];
        for (ptrdiff_t b = 0; b < nb; b++)
            v[b] = res[b * stride + j];
        if (ob == 2) {
            memcpy(o + j * es, v, (size_t)nb * 2);
        } else {
            for (ptrdiff_t b = 0; b < nb; b++)
                memcpy(rows[b].o + j * es, &v[b], 2);
        }
    }
}
