/* The dispatch: one row, a block of rows, a range of tasks (run_tasks), and the
 * smk_impl object SMK_IMPL_NAME of this variant.
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h); not a header of its own. */
static void run_row(const smk_job *job, ptrdiff_t r, double *buf)
{
    smk_row row;
    row_pointers(job, r, &row);
    ptrdiff_t n = job->len;
    if (job->bsum) {
        row_block_sums(job, &row, buf);
        return;
    }
    /* The float32 path reads the row in place; the rows that it does not take (NaN,
     * infinities, all -inf, temperature other than 1) go on chunk by chunk. */
    if (!f32_fast(job) && n <= SMK_CHUNK) {
        /* float16 and bfloat16 rows widened to float32 (kernel_rows_small.h); the
         * rows that it does not take go through the double buffer. */
        if (small_fast(job) && small_row(job, &row, buf))
            return;
        if (f64_in_place_job(job) && f64_row_in_place(job, &row))
            return;
        load_chunk(job, row.x, row.m, 0, n, buf);
        row_in_buffer(job, &row, buf, n, 1);
        return;
    }
    /* The row in its phases: maximum, exp-and-sum, the sums, then the output. */
    smk_partial part;
    row_phase(job, &row, 1, 0, n, buf, &part);
    row_decide(job, &row, &part);
    row_phase(job, &row, 2, 0, n, buf, &part);
    row_sums(job, &row, &part);
    if (job->op != SMK_LOGSUMEXP)
        row_phase(job, &row, 3, 0, n, buf, &part);
}

/* Column mode: rows r0 .. r0 + nb - 1 are adjacent in memory (the innermost outer
 * dimension is contiguous); gather them into nb buffers so the input is read once. */
static void run_block_general(const smk_job *job, smk_row *rows, ptrdiff_t nb, double *buf);

static void run_block(const smk_job *job, ptrdiff_t r0, ptrdiff_t nb, double *buf)
{
    smk_row rows[SMK_BLOCK_F32];
    if (nb < 1)
        return;
    if (job->stream) {
        /* The multiples of 8 streamed, unless a row is not for that path; the rest by
         * the 32-row path, with its scratch after the state. */
        ptrdiff_t done = 0;
        smk_row row0;
        row_pointers(job, r0, &row0);
        ptrdiff_t whole = nb & ~(ptrdiff_t)7;
        int taken = whole > 0 && (job->in_type == SMK_F32
                                      ? f32_stream_block(job, &row0, whole, buf)
                                      : f64_stream_block(job, &row0, whole, buf));
        if (taken) {
            done = whole;
            __atomic_fetch_add(&smk_streamed_blocks_count, 1, __ATOMIC_RELAXED);
        }
        smk_job sub = *job;
        sub.stream = 0;
        sub.block = job->in_type == SMK_F32 ? SMK_BLOCK_F32 : SMK_BLOCK;
        for (; done < nb; done += sub.block)
            run_block(&sub, r0 + done, nb - done < sub.block ? nb - done : sub.block,
                      buf + 8 * SMK_STREAM_ROWS);
        return;
    }
    for (ptrdiff_t b = 0; b < nb; b++)
        row_pointers(job, r0 + b, &rows[b]);
    if (small_columns_job(job) && nb <= SMK_BLOCK) {
        small_column_block(job, rows, nb, buf);
        return;
    }
    ptrdiff_t done = 0;
    if (nb >= LANES && f32_lanes_job(job) && job->xs[job->ndim - 1] == 4 &&
        (job->op == SMK_LOGSUMEXP || (job->os[job->ndim - 1] == 4 && job->o_es % 4 == 0)))
        done = f32_column_block(job, rows, nb, (float *)(void *)buf);
    else if (nb == LANES && f64_lanes_job(job) && job->xs[job->ndim - 1] == 8 &&
             (job->op == SMK_LOGSUMEXP || (job->os[job->ndim - 1] == 8 && job->o_es % 8 == 0)))
        done = f64_column_block(job, rows, buf) ? LANES : 0;
    /* The rest (a group the path did not take, and what follows it) in groups of at
     * most SMK_BLOCK rows. */
    while (done < nb) {
        ptrdiff_t count = nb - done < SMK_BLOCK ? nb - done : SMK_BLOCK;
        run_block_general(job, rows + done, count, buf);
        done += count;
    }
}

/* Rows gathered into nb double scratch rows, each computed there, and scattered back. */
static void run_block_general(const smk_job *job, smk_row *rows, ptrdiff_t nb, double *buf)
{
    ptrdiff_t n = job->len, stride = round4(n);
    const char *x = rows[0].x;
    ptrdiff_t xb = job->xs[job->ndim - 1];
    if (job->in_type == SMK_F32 && xb == 4) {
        for (ptrdiff_t j = 0; j < n; j++) {
            float v[SMK_BLOCK];
            memcpy(v, x + j * job->x_es, (size_t)nb * sizeof(float));
            for (ptrdiff_t b = 0; b < nb; b++)
                buf[b * stride + j] = v[b];
        }
    } else if (job->in_type == SMK_F64 && xb == 8) {
        for (ptrdiff_t j = 0; j < n; j++) {
            double v[SMK_BLOCK];
            __builtin_prefetch(x + (j + PREFETCH_AHEAD) * job->x_es, 0, 0);
            memcpy(v, x + j * job->x_es, (size_t)nb * sizeof(double));
            for (ptrdiff_t b = 0; b < nb; b++)
                buf[b * stride + j] = v[b];
        }
    } else {
        for (ptrdiff_t j = 0; j < n; j++)
            for (ptrdiff_t b = 0; b < nb; b++)
                buf[b * stride + j] = load_one(x + b * xb + j * job->x_es, job->in_type);
    }
    for (ptrdiff_t b = 0; b < nb; b++) {
        double *row_buf = buf + b * stride;
        if (rows[b].m) {
            for (ptrdiff_t j = 0; j < n; j++)
                if (!rows[b].m[j * job->m_es])
                    row_buf[j] = -INFINITY;
        }
        pad(row_buf, n);
        row_in_buffer(job, &rows[b], row_buf, n, 0);
    }
    if (job->op == SMK_LOGSUMEXP)
        return;
    char *o = rows[0].o;
    ptrdiff_t ob = job->os[job->ndim - 1];
    if (job->out_type == SMK_F32 && ob == 4) {
        for (ptrdiff_t j = 0; j < n; j++) {
            float v[SMK_BLOCK];
            for (ptrdiff_t b = 0; b < nb; b++)
                v[b] = (float)buf[b * stride + j];
            memcpy(o + j * job->o_es, v, (size_t)nb * sizeof(float));
        }
    } else if (job->out_type == SMK_F64 && ob == 8) {
        for (ptrdiff_t j = 0; j < n; j++) {
            double v[SMK_BLOCK];
            __builtin_prefetch(o + (j + PREFETCH_AHEAD) * job->o_es, 1, 0);
            for (ptrdiff_t b = 0; b < nb; b++)
                v[b] = buf[b * stride + j];
            memcpy(o + j * job->o_es, v, (size_t)nb * sizeof(double));
        }
    } else {
        for (ptrdiff_t j = 0; j < n; j++)
            for (ptrdiff_t b = 0; b < nb; b++)
                store_one(o + b * ob + j * job->o_es, job->out_type, buf[b * stride + j]);
    }
}

/* Tasks t0 .. t1 - 1: rows in row mode, blocks of rows in column mode. */
static void run_tasks(const smk_job *job, ptrdiff_t t0, ptrdiff_t t1, double *buf)
{
    if (!job->block) {
        ptrdiff_t r = t0;
        int (*short_rows)(const smk_job *, ptrdiff_t) =
            job->len > SHORT_ROW ? NULL
            : f32_lanes_job(job) ? f32_short_rows
            : f64_lanes_job(job) ? f64_short_rows
            : small_lanes_job(job) ? small_short_rows
                                 : NULL;
        if (short_rows)
            for (; r + LANES <= t1; r += LANES)
                if (!short_rows(job, r))
                    for (ptrdiff_t q = r; q < r + LANES; q++)
                        run_row(job, q, buf);
        for (; r < t1; r++)
            run_row(job, r, buf);
        return;
    }
    ptrdiff_t inner = job->shape[job->ndim - 1];
    ptrdiff_t per_prefix = (inner + job->block - 1) / job->block;
    for (ptrdiff_t t = t0; t < t1; t++) {
        ptrdiff_t prefix = t / per_prefix, blk = t % per_prefix;
        ptrdiff_t first = blk * job->block;
        ptrdiff_t nb = inner - first < job->block ? inner - first : job->block;
        run_block(job, prefix * inner + first, nb, buf);
    }
}

const smk_impl SMK_IMPL_NAME = {run_tasks, row_begin, row_phase, row_decide, row_sums,
                                softcap_range};
