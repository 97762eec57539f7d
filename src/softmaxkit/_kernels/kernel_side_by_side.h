/* Sixteen float32 rows side by side (and four float64 rows): short rows and column
 * blocks, each lane a row.
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h); not a header of its own. */
/* ---- sixteen float32 rows side by side ----
 *
 * When the rows, not the entries of a row, are adjacent in memory (a reduction over
 * axis 0 of a C-contiguous matrix), entry j of sixteen consecutive rows is one cache
 * line: each lane of two 8-lane vectors follows one row, with the arithmetic of the
 * row path above, so the input is read in place, once per pass, from cache. Short
 * contiguous rows are transposed into this layout through a small buffer. Blocks
 * with a row that is not finite (NaN, +inf, every entry -inf), a mask, or rows of
 * different temperatures go the general way. */

#define LANES 16
#define SHORT_ROW 64
/* The hardware prefetchers do not follow a stride of a whole row: the lines this many
 * steps ahead are requested explicitly (a prefetch never faults). */
#define PREFETCH_AHEAD 8

static inline f32_shift shift_lanes(v8f top, double temperature)
{
    f32_shift s;
    s.top = top;
    s.top_d = lo_half(top);
    s.top_hi = hi_half(top);
    s.inv_t = vsplat(1.0 / temperature);
    s.top_f = top[0];
    s.inv_t_s = 1.0 / temperature;
    return s;
}

/* Whether the sixteen rows have one finite temperature (rows side by side share it). */
static int lanes_share_a_temperature(const smk_row *rows)
{
    for (int b = 0; b < LANES; b++)
        if (rows[b].tmode != SMK_T_FINITE || rows[b].temperature != rows[0].temperature)
            return 0;
    return 1;
}

/* logsumexp of sixteen finite rows side by side, max / T + log_total, into their lse
 * (as row_sums forms it). */
static void store_lanes_lse(const smk_job *job, const smk_row *rows, const v4d *top,
                            double temperature, const v4d *log_total)
{
    for (int q = 0; q < 4; q++) {
        v4d lse = top[q] / vsplat(temperature) + log_total[q];
        for (int k = 0; k < 4; k++)
            store_one(rows[4 * q + k].l, job->lse_type, lse[k]);
    }
}

/* Eight doubles (lo: lanes 0-3, hi: lanes 4-7) as a + b, a rounded to float32 and b
 * the rest rounded: within 2^-48 of them (the factors of the scale passes). */
static inline void two_floats(v4d lo, v4d hi, v8f *a, v8f *b)
{
    *a = join8(lo, hi);
    *b = join8(lo - lo_half(*a), hi - hi_half(*a));
}

/* The exp-and-sum pass of sixteen rows side by side (see f32_lanes), two steps at a
 * time: four vectors side by side, as on the row path. near and plain as in sum8n;
 * with e_buf, exp is stored there. */
static inline __attribute__((always_inline, unused)) void
lanes_sum(int scaled, int near, int plain, const f32_shift *s, const float *x, ptrdiff_t xs,
          float *e_buf, ptrdiff_t n, v4d *sum, v8i *count, v8i *far)
{
    for (ptrdiff_t j = 0; j < n; j += 2) {
        int cnt = j + 1 < n ? 4 : 2;
        v8f v[4], d[4], c[4], rh[4], sm[4], sc[4];
        v8i slow[4], is_top[4];
        for (int k = 0; k < cnt; k++) {
            int h = k % 2;
            v[k] = load8(x + (j + k / 2) * xs + 8 * h);
            diff8n(1, &s[h], scaled, &v[k], &d[k], &c[k]);
        }
        if (cnt == 4)
            exp8n_near(4, near, d, c, rh, sm, sc, slow);
        else
            exp8n_near(2, near, d, c, rh, sm, sc, slow);
        for (int k = 0; k < cnt; k++) {
            int h = k % 2;
            if (!plain) {
                is_top[k] = v[k] == s[h].top;
                count[h] -= is_top[k];
            }
            if (!near)
                far[h] |= slow[k];
            if (!plain && !near)
                sc[k] = blend8(slow[k] | is_top[k], splat8(0.0f), sc[k]);
            else if (!plain)
                sc[k] = blend8(is_top[k], splat8(0.0f), sc[k]);
            else if (!near)
                sc[k] = blend8(slow[k], splat8(0.0f), sc[k]);
            v4d ea = vfma(lo_half(sc[k]), lo_half(rh[k]) + lo_half(sm[k]), lo_half(sc[k]));
            v4d eb = vfma(hi_half(sc[k]), hi_half(rh[k]) + hi_half(sm[k]), hi_half(sc[k]));
            if (e_buf && plain)
                store8(e_buf + (j + k / 2) * LANES + 8 * h, join8(ea, eb));
            else if (e_buf)
                store8(e_buf + (j + k / 2) * LANES + 8 * h,
                       blend8(is_top[k], splat8(1.0f), join8(ea, eb)));
            sum[2 * h] += ea;
            sum[2 * h + 1] += eb;
        }
    }
}

/* Entry j of row b at x[j * xs + b], b < 16; results at o[j * os + b] (o apart from
 * x), or into the rows' lse; softmax keeps exp in e_buf[j * 16 + b] between its
 * passes. With odd, log_softmax's double results are rounded to float32 by rounding
 * to odd (for a second rounding, to float16 or bfloat16: see join8_odd). Returns 0,
 * having written nothing, when a row is not for this path. */
static int f32_lanes(const smk_job *job, smk_row *rows, const float *x, ptrdiff_t xs,
                     float *e_buf, float *o, ptrdiff_t os, ptrdiff_t n, int odd)
{
    double temperature = rows[0].temperature;
    if (!lanes_share_a_temperature(rows) || !(temperature > 0x1p-900 && temperature < 0x1p900))
        return 0;
    v8f mx[2] = {splat8(-INFINITY), splat8(-INFINITY)};
    v8f mn[2] = {splat8(INFINITY), splat8(INFINITY)};
    v8i bad = {0, 0, 0, 0, 0, 0, 0, 0};
    for (ptrdiff_t j = 0; j < n; j++) {
        for (int h = 0; h < 2; h++) {
            v8f v = load8(x + j * xs + 8 * h);
            mx[h] = blend8(v > mx[h], v, mx[h]);
            mn[h] = blend8(v < mn[h], v, mn[h]);
            bad |= v != v;
        }
    }
    for (int h = 0; h < 2; h++)
        bad |= (mx[h] == splat8(INFINITY)) | (mx[h] == splat8(-INFINITY));
    if (any8(bad))
        return 0;
    int scaled = temperature != 1.0;
    f32_shift s[2] = {shift_lanes(mx[0], temperature), shift_lanes(mx[1], temperature)};
    /* As on the row path: every entry within 86 of its row's maximum, and softmax
     * without the row statistics. */
    v4l far_rows = {0, 0, 0, 0};
    for (int h = 0; h < 2; h++) {
        far_rows |= (lo_half(mn[h]) - lo_half(mx[h])) * s[h].inv_t < vsplat(-86.0);
        far_rows |= (hi_half(mn[h]) - hi_half(mx[h])) * s[h].inv_t < vsplat(-86.0);
    }
    int near = !(far_rows[0] | far_rows[1] | far_rows[2] | far_rows[3]);
    int plain = job->op == SMK_SOFTMAX && !rows[0].l;
    v4d sum[4] = {vsplat(0.0), vsplat(0.0), vsplat(0.0), vsplat(0.0)};
    v8i count[2] = {{0}, {0}}, far[2] = {{0}, {0}};
    float *e_out = job->op == SMK_SOFTMAX ? e_buf : NULL;
#if SMK_USE_AVX512
#define LANES_SUM_CALL(S, N, P) w_lanes_sum(S, N, P, s, x, xs, e_out, n, sum, count, far)
#else
#define LANES_SUM_CALL(S, N, P) lanes_sum(S, N, P, s, x, xs, e_out, n, sum, count, far)
#endif
    WITH_CONSTANT_FLAGS(scaled, near, plain, LANES_SUM_CALL);
#undef LANES_SUM_CALL
    v4d factor[4], top_d[4];
    for (int b = 0; b < LANES; b++)
        top_d[b / 4][b % 4] = s[b / 8].top[b % 8];
    int any_far = any8(far[0] | far[1]);
    if (job->op != SMK_SOFTMAX && !any_far && !job->l_es) {
        /* log_softmax and logsumexp: the log-normalizers, log1p((count - 1) + sum),
         * on four lanes at a time. */
        for (int q = 0; q < 4; q++) {
            v4d count_d = q % 2 ? hi_half(__builtin_convertvector(count[q / 2], v8f))
                                : lo_half(__builtin_convertvector(count[q / 2], v8f));
            factor[q] = vlog1p((count_d - vsplat(1.0)) + sum[q]);
        }
        if (job->op == SMK_LOGSUMEXP) {
            store_lanes_lse(job, rows, top_d, temperature, factor);
            return 1;
        }
    } else if (job->op == SMK_SOFTMAX && !any_far && !rows[0].l) {
        /* The usual softmax block: each row's factor, gain / total, on four lanes at a
         * time (the totals are (count + sum) as row_sums forms them). */
        for (int q = 0; q < 4; q++) {
            v4d count_d = q % 2 ? hi_half(__builtin_convertvector(count[q / 2], v8f))
                                : lo_half(__builtin_convertvector(count[q / 2], v8f));
            v4d gain;
            for (int k = 0; k < 4; k++)
                gain[k] = rows[4 * q + k].gain;
            factor[q] = gain / (count_d + sum[q]);
        }
    } else {
        /* Each row's partial, completed by the far entries, then the row's decisions. */
        for (int b = 0; b < LANES; b++) {
            int h = b / 8, k = b % 8;
            smk_partial part;
            partial_init(&part);
            part.max = s[h].top[k];
            part.count = count[h][k];
            double rest = sum[2 * h + k / 4][k % 4];
            if (far[h][k]) {
                f32_shift one = shift_of(s[h].top[k], temperature);
                for (ptrdiff_t j = 0; j < n; j++) {
                    float xv = x[j * xs + b];
                    if (diff1(&one, scaled, xv) < -87.0f)
                        rest += exp_far(&one, scaled, xv);
                }
            }
            add_partial(&part, rest);
            row_decide(job, &rows[b], &part);
            row_sums(job, &rows[b], &part);
        }
        if (job->op == SMK_LOGSUMEXP)
            return 1;
        for (int b = 0; b < LANES; b++)
            factor[b / 4][b % 4] = job->op == SMK_SOFTMAX ? rows[b].scale : rows[b].log_total;
    }
    if (job->op == SMK_SOFTMAX) {
        /* Each row's factor as two float32, scaled by 2^64 (see f32_scale_out_impl). */
        v8f a[2], b[2];
        const v8f down = splat8(0x1p-64f);
        for (int h = 0; h < 2; h++)
            two_floats(factor[2 * h] * vsplat(0x1p64), factor[2 * h + 1] * vsplat(0x1p64),
                       &a[h], &b[h]);
        for (ptrdiff_t j = 0; j < n; j++) {
            __builtin_prefetch(o + (j + PREFETCH_AHEAD) * os, 1, 0);
            for (int h = 0; h < 2; h++) {
                v8f e = load8(e_buf + j * LANES + 8 * h);
                store8(o + j * os + 8 * h, fma8(e, a[h], e * b[h]) * down);
            }
        }
        for (int b = 0; b < LANES && any_far; b++) {
            if (!far[b / 8][b % 8])
                continue;
            f32_shift one = shift_of((float)rows[b].max, temperature);
            for (ptrdiff_t j = 0; j < n; j++) {
                float xv = x[j * xs + b];
                if (diff1(&one, scaled, xv) < -87.0f)
                    o[j * os + b] = (float)(exp_far(&one, scaled, xv) * rows[b].scale);
            }
        }
        return 1;
    }
    v4d tv = vsplat(temperature);
    for (ptrdiff_t j = 0; j < n; j++)
        for (int h = 0; h < 2; h++) {
            v8f v = load8(x + j * xs + 8 * h);
            v4d a = lo_half(v) - top_d[2 * h], c = hi_half(v) - top_d[2 * h + 1];
            if (scaled) {
                a = a / tv;
                c = c / tv;
            }
            store8(o + j * os + 8 * h, odd ? join8_odd(a - factor[2 * h], c - factor[2 * h + 1])
                                           : join8(a - factor[2 * h], c - factor[2 * h + 1]));
        }
    return 1;
}

static int f64_lanes_job(const smk_job *job)
{
    return job->in_type == SMK_F64 && !job->m && !job->bsum &&
           (job->op == SMK_LOGSUMEXP || job->out_type == SMK_F64);
}

static int f32_lanes_job(const smk_job *job)
{
    return job->in_type == SMK_F32 && !job->m && !job->bsum &&
           (job->op == SMK_LOGSUMEXP || job->out_type == SMK_F32);
}

/* Sixteen short rows r0 .. r0 + 15 gathered into a transposing buffer: entry j of
 * row b at in[j * 16 + b] (elements of size bytes: inlined, so that each copy is one
 * move of a known size). */
static inline __attribute__((always_inline)) void
short_rows_gather(const smk_job *job, ptrdiff_t r0, smk_row *rows, char *in, size_t size)
{
    for (int b = 0; b < LANES; b++) {
        if (b && job->ndim == 1 && !job->t && !job->g) {
            /* One outer dimension: the next row is one stride on. */
            rows[b] = rows[b - 1];
            rows[b].x += job->xs[0];
            rows[b].o = rows[b].o ? rows[b].o + job->os[0] : NULL;
            rows[b].l = rows[b].l ? rows[b].l + job->ls[0] : NULL;
        } else {
            row_pointers(job, r0 + b, &rows[b]);
        }
    }
    /* The loop bounds and strides in locals: the stores could alias the job. */
    ptrdiff_t n = job->len, es = job->x_es;
    for (int b = 0; b < LANES; b++) {
        const char *p = rows[b].x;
        for (ptrdiff_t j = 0; j < n; j++)
            memcpy(in + (j * LANES + b) * size, p + j * es, size);
    }
}

/* The results of short_rows_gather's rows, from the same layout, into their outputs. */
static inline __attribute__((always_inline)) void
short_rows_scatter(const smk_job *job, smk_row *rows, const char *res, size_t size)
{
    ptrdiff_t n = job->len, es = job->o_es;
    for (int b = 0; b < LANES; b++) {
        char *p = rows[b].o;
        for (ptrdiff_t j = 0; j < n; j++)
            memcpy(p + j * es, res + (j * LANES + b) * size, size);
    }
}

/* Sixteen short contiguous float32 rows r0 .. r0 + 15, through a transposing buffer. */
static int f32_short_rows(const smk_job *job, ptrdiff_t r0)
{
    smk_row rows[LANES];
    float in[SHORT_ROW * LANES], res[SHORT_ROW * LANES];
    short_rows_gather(job, r0, rows, (char *)in, sizeof(float));
    if (!f32_lanes(job, rows, in, LANES, res, res, LANES, job->len, 0))
        return 0;
    if (job->op != SMK_LOGSUMEXP)
        short_rows_scatter(job, rows, (const char *)res, sizeof(float));
    return 1;
}

static int small_lanes_job(const smk_job *job)
{
    return (job->in_type == SMK_F16 || job->in_type == SMK_BF16) && !job->m && !job->bsum &&
           (job->op == SMK_LOGSUMEXP || job->out_type == SMK_F16 || job->out_type == SMK_BF16);
}

/* Sixteen short float16 or bfloat16 rows: gathered as they are into the transposing
 * layout, widened there to float32 (exactly), the float32 path above, and the results
 * rounded once to the small format (see kernel_rows_small.h) before the scatter. */
static int small_short_rows(const smk_job *job, ptrdiff_t r0)
{
    smk_row rows[LANES];
    uint16_t raw[SHORT_ROW * LANES];
    float in[SHORT_ROW * LANES], res[SHORT_ROW * LANES];
    ptrdiff_t count = job->len * LANES;
    short_rows_gather(job, r0, rows, (char *)raw, sizeof(uint16_t));
    if (job->in_type == SMK_F16)
        widen_contiguous_as((const char *)raw, SMK_F16, count, in);
    else
        widen_contiguous_as((const char *)raw, SMK_BF16, count, in);
    if (!f32_lanes(job, rows, in, LANES, res, res, LANES, job->len, 1))
        return 0;
    if (job->op == SMK_LOGSUMEXP)
        return 1;
    if (job->out_type == SMK_F16)
        narrow_contiguous_as(res, SMK_F16, count, (char *)raw);
    else
        narrow_contiguous_as(res, SMK_BF16, count, (char *)raw);
    short_rows_scatter(job, rows, (const char *)raw, sizeof(uint16_t));
    return 1;
}

/* The exp-and-sum pass of f64_lanes (near and plain as in sum_n); with e_out, exp
 * overwrites the entries there. */
static inline __attribute__((always_inline)) void
lanes64_sum(int near, int plain, const double *in, double *e_out, const v4d *mx,
            double temperature, ptrdiff_t n, v4d *sum, v4d *comp, v4l *count)
{
    int scaled = temperature != 1.0, exact = temperature < 0x1p996;
    for (ptrdiff_t j = 0; j < n; j++) {
        v4d x[4], hi[4], lo[4], e[4];
        for (int q = 0; q < 4; q++) {
            x[q] = vload(in + j * LANES + 4 * q);
            shifted_v(x[q], mx[q], temperature, scaled, 1, exact, &hi[q], &lo[q]);
        }
        vexp_near(4, near, hi, lo, 1, e);
        for (int q = 0; q < 4; q++) {
            if (e_out)
                vstore(e_out + j * LANES + 4 * q, e[q]);
            v4d ek = e[q];
            if (!plain) {
                v4l is_top = x[q] == mx[q];
                count[q] -= is_top;
                ek = vblend(is_top, vsplat(0.0), ek);
            }
            v4d t = sum[q] + ek, bp = t - sum[q];
            comp[q] += (sum[q] - (t - bp)) + (ek - bp);
            sum[q] = t;
        }
    }
}

/* Sixteen float64 rows side by side: entry j of row b at in[j * LANES + b] (a scratch
 * copy, which softmax overwrites with exp between its passes), results at
 * o[j * os + b]; four 4-lane vectors per step, with the double path's numerics (TwoSum
 * for x - max and the sum, the exact remainder of the division by the temperature,
 * the accurate exp, which covers the whole range). Returns 0, having written nothing
 * to o, when a row is not finite or the temperatures differ. */
static int f64_lanes(const smk_job *job, smk_row *rows, double *in, double *o, ptrdiff_t os,
                     ptrdiff_t n)
{
    if (!lanes_share_a_temperature(rows))
        return 0;
    double temperature = rows[0].temperature;
    v4d mx[4], mn[4], zero = vsplat(0.0);
    v4l bad = {0, 0, 0, 0};
    for (int q = 0; q < 4; q++) {
        mx[q] = vsplat(-INFINITY);
        mn[q] = vsplat(INFINITY);
    }
    for (ptrdiff_t j = 0; j < n; j++)
        for (int q = 0; q < 4; q++) {
            v4d v = vload(in + j * LANES + 4 * q);
            mx[q] = vblend(v > mx[q], v, mx[q]);
            mn[q] = vblend(v < mn[q], v, mn[q]);
            bad |= v != v;
        }
    v4l far_rows = {0, 0, 0, 0};
    for (int q = 0; q < 4; q++) {
        bad |= (mx[q] == vsplat(INFINITY)) | (mx[q] == vsplat(-INFINITY));
        /* NaN (an infinite difference over an infinite temperature) counts as far. */
        far_rows |= ~((mn[q] - mx[q]) * vsplat(1.0 / temperature) >= vsplat(-700.0));
    }
    if (bad[0] | bad[1] | bad[2] | bad[3])
        return 0;
    int near = !(far_rows[0] | far_rows[1] | far_rows[2] | far_rows[3]);
    int plain = job->op == SMK_SOFTMAX && !(job->l_es && rows[0].l);
    int scaled = temperature != 1.0, exact = temperature < 0x1p996;
    v4d sum[4], comp[4];
    v4l count[4];
    for (int q = 0; q < 4; q++) {
        sum[q] = comp[q] = zero;
        count[q] = (v4l){0, 0, 0, 0};
    }
    double *e_out = job->op == SMK_SOFTMAX ? in : NULL;
#define LANES64_SUM_CALL(N, P) lanes64_sum(N, P, in, e_out, mx, temperature, n, sum, comp, count)
    WITH_CONSTANT_NEAR_PLAIN(near, plain, LANES64_SUM_CALL);
#undef LANES64_SUM_CALL
    v4d factor[4];
    if (job->op != SMK_SOFTMAX && !job->l_es) {
        /* log_softmax and logsumexp: the log-normalizers on four lanes at a time, the
         * argument formed as row_sums forms it. */
        for (int q = 0; q < 4; q++) {
            v4d c = {(double)count[q][0], (double)count[q][1], (double)count[q][2],
                     (double)count[q][3]};
            factor[q] = vlog1p(((c - vsplat(1.0)) + sum[q]) + comp[q]);
        }
        if (job->op == SMK_LOGSUMEXP) {
            store_lanes_lse(job, rows, mx, temperature, factor);
            return 1;
        }
    } else if (job->op == SMK_SOFTMAX && !rows[0].l && !job->g) {
        /* The usual softmax block: 1 / total on four lanes at a time, the total formed
         * as row_sums forms it. */
        for (int q = 0; q < 4; q++) {
            v4d c = {(double)count[q][0], (double)count[q][1], (double)count[q][2],
                     (double)count[q][3]};
            factor[q] = vsplat(1.0) / ((c + sum[q]) + comp[q]);
        }
    } else {
        for (int b = 0; b < LANES; b++) {
            int q = b / 4, k = b % 4;
            smk_partial part;
            partial_init(&part);
            part.max = mx[q][k];
            part.count = count[q][k];
            part.hi = sum[q][k];
            part.lo = comp[q][k];
            row_decide(job, &rows[b], &part);
            row_sums(job, &rows[b], &part);
            factor[q][k] = job->op == SMK_SOFTMAX ? rows[b].scale : rows[b].log_total;
        }
    }
    if (job->op == SMK_LOGSUMEXP)
        return 1;
    for (ptrdiff_t j = 0; j < n; j++) {
        __builtin_prefetch(o + (j + PREFETCH_AHEAD) * os, 1, 0);
        for (int q = 0; q < 4; q++) {
            v4d r;
            if (job->op == SMK_SOFTMAX) {
                r = vload(in + j * LANES + 4 * q) * factor[q];
            } else {
                v4d hi, lo;
                shifted_v(vload(in + j * LANES + 4 * q), mx[q], temperature, scaled, 1, exact,
                          &hi, &lo);
                r = (hi - factor[q]) + lo;
            }
            vstore(o + j * os + 4 * q, r);
        }
    }
    return 1;
}

/* Sixteen short contiguous float64 rows r0 .. r0 + 15, through a transposing buffer. */
static int f64_short_rows(const smk_job *job, ptrdiff_t r0)
{
    smk_row rows[LANES];
    double in[SHORT_ROW * LANES], res[SHORT_ROW * LANES];
    short_rows_gather(job, r0, rows, (char *)in, sizeof(double));
    if (!f64_lanes(job, rows, in, res, LANES, job->len))
        return 0;
    if (job->op != SMK_LOGSUMEXP)
        short_rows_scatter(job, rows, (const char *)res, sizeof(double));
    return 1;
}

/* Adjacent rows (nb of them, the first 16 * (nb / 16) by the 16-lane path) read along a
 * stride of a whole row: the lines are copied into a contiguous buffer first, since a
 * power-of-two stride maps them all to a few cache sets, where they would not survive
 * from one pass to the next. Returns how many of the leading rows were done: the
 * groups of 16 that the path took, up to the first it did not. */
static ptrdiff_t f32_column_block(const smk_job *job, smk_row *rows, ptrdiff_t nb,
                                  float *scratch)
{
    ptrdiff_t n = job->len, groups = nb / LANES;
    float *in = scratch, *res = scratch + n * nb;
    const char *x = rows[0].x;
    if (nb == SMK_BLOCK_F32) /* a copy of constant size, inlined */
        for (ptrdiff_t j = 0; j < n; j++) {
            __builtin_prefetch(x + (j + PREFETCH_AHEAD) * job->x_es, 0, 0);
            memcpy(in + j * SMK_BLOCK_F32, x + j * job->x_es, SMK_BLOCK_F32 * sizeof(float));
        }
    else
        for (ptrdiff_t j = 0; j < n; j++)
            memcpy(in + j * nb, x + j * job->x_es, (size_t)nb * sizeof(float));
    /* The results go straight to the output, whole lines per step. */
    for (ptrdiff_t g = 0; g < groups; g++) {
        float *o = job->op == SMK_LOGSUMEXP ? NULL : (float *)(void *)rows[g * LANES].o;
        if (!f32_lanes(job, rows + g * LANES, in + g * LANES, nb, res, o, job->o_es / 4, n, 0))
            return g * LANES;
    }
    return groups * LANES;
}

/* Sixteen adjacent float64 rows read along a stride of a whole row, copied into a
 * contiguous buffer (two lines per step) as f32_column_block does; the results go
 * straight to the output. Returns 0 when the 16-lane path did not take them. */
static int f64_column_block(const smk_job *job, smk_row *rows, double *scratch)
{
    ptrdiff_t n = job->len;
    const char *x = rows[0].x;
    for (ptrdiff_t j = 0; j < n; j++) {
        __builtin_prefetch(x + (j + PREFETCH_AHEAD) * job->x_es, 0, 0);
        memcpy(scratch + j * LANES, x + j * job->x_es, LANES * sizeof(double));
    }
    double *o = job->op == SMK_LOGSUMEXP ? NULL : (double *)(void *)rows[0].o;
    return f64_lanes(job, rows, scratch, o, job->o_es / 8, n);
}
