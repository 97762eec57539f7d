/* float64 rows read in place (contiguous, without a mask, every shifted score near).
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h); not a header of its own. */
/* ---- float64 rows read in place ----
 *
 * Contiguous float64 rows without a mask whose shifted scores are all >= -700 (near)
 * are read where they are, as the float32 path does: the maximum, then exp and its
 * sum with exp stored in the output (softmax), then the output scaled in place; the
 * numerics are the buffer path's. The last n % 4 entries go through a padded vector. */
static int f64_in_place_job(const smk_job *job)
{
    return job->in_type == SMK_F64 && job->x_es == 8 && !job->m && !job->bsum &&
           (job->op == SMK_LOGSUMEXP || (job->out_type == SMK_F64 && job->o_es == 8));
}

/* Returns 0, having written nothing, when the row is not one for this path. */
static int f64_row_in_place(const smk_job *job, smk_row *row)
{
    ptrdiff_t n = job->len, n4 = n & ~(ptrdiff_t)3, rest = n - n4;
    const double *x = (const double *)(const void *)row->x;
    double *o = job->op == SMK_LOGSUMEXP ? NULL : (double *)(void *)row->o;
    if (o == x)
        return 0; /* in place: the buffer path */
    smk_partial partial, *part = &partial;
    partial_init(part);
#if SMK_USE_AVX512
    /* The multiple of 8 on eight lanes (kernel_avx512.h), then up to n4 on four. */
    ptrdiff_t n8 = n & ~(ptrdiff_t)7;
    w64_stats(x, n8, part);
#else
    ptrdiff_t n8 = 0;
#endif
    buf_stats(x + n8, n4 - n8, part);
    for (ptrdiff_t i = n4; i < n; i++)
        stats_one(part, x[i]);
    row_decide(job, row, part);
    if (row->kind != KIND_FINITE || !row_is_near(row, 700.0))
        return 0;
    partial_init(part);
    int plain = job->op == SMK_SOFTMAX && !(job->l_es && row->l);
    double *out = job->op == SMK_SOFTMAX ? o : NULL;
#if SMK_USE_AVX512
    w64_sum_near(plain, x, out, n8, row, part);
#endif
    if (plain)
        buf_sum_impl(1, 1, x + n8, out ? out + n8 : NULL, n4 - n8, job, row, part);
    else
        buf_sum_impl(1, 0, x + n8, out ? out + n8 : NULL, n4 - n8, job, row, part);
    if (rest) {
        /* The tail, padded with -inf: not near. */
        double tail[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        memcpy(tail, x + n4, (size_t)rest * sizeof(double));
        if (plain)
            buf_sum_impl(0, 1, tail, out ? tail : NULL, 4, job, row, part);
        else
            buf_sum_impl(0, 0, tail, out ? tail : NULL, 4, job, row, part);
        if (out)
            memcpy(out + n4, tail, (size_t)rest * sizeof(double));
    }
    row_sums(job, row, part);
    if (job->op == SMK_LOGSUMEXP)
        return 1;
    if (job->op == SMK_SOFTMAX) {
        v4d scale = vsplat(row->scale);
        ptrdiff_t i = n8;
#if SMK_USE_AVX512
        w64_scale(o, n8, row->scale);
#endif
        for (; i < n4; i += 4)
            vstore(o + i, vload(o + i) * scale);
        for (; i < n; i++)
            o[i] *= row->scale;
        return 1;
    }
    double temperature = row->temperature;
    int scaled = temperature != 1.0, exact = temperature < 0x1p996;
    v4d log_total = vsplat(row->log_total);
#if SMK_USE_AVX512
    w64_log_out(x, o, n8, row);
#endif
    for (ptrdiff_t i = n8; i < n4; i += 4) {
        v4d hi, lo;
        shifted(vload(x + i), row->max, temperature, scaled, 1, exact, &hi, &lo);
        vstore(o + i, (hi - log_total) + lo);
    }
    for (ptrdiff_t i = n4; i < n; i++) {
        v4d hi, lo;
        shifted(vsplat(x[i]), row->max, temperature, scaled, 1, exact, &hi, &lo);
        o[i] = ((hi - log_total) + lo)[0];
    }
    return 1;
}
