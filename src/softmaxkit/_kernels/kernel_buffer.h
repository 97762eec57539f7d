/* The buffered rows: a chunk of a row loaded into a double buffer and stored back, the
 * passes over that buffer (max, count, exp-and-sum, log, fill), and the per-row state
 * (pointers, the decision on edge rows, the sums).
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h); not a header of its own. */
/* ---- loading a chunk of a row into a double buffer, and storing it back ---- */

#if SMK_USE_AVX512
/* float16 and bfloat16 converted 16 at a time (kernel_avx512.h). */
static void w_load_small(const char *p, int type, ptrdiff_t n, double *buf);
static void w_store_small(char *p, int type, ptrdiff_t n, const double *buf);
#endif

static inline ptrdiff_t round4(ptrdiff_t n) { return (n + 3) & ~(ptrdiff_t)3; }

static void pad(double *buf, ptrdiff_t n)
{
    for (ptrdiff_t i = n; i < round4(n); i++)
        buf[i] = -INFINITY;
}

static void load_typed(const char *p, ptrdiff_t es, int type, ptrdiff_t n, double *buf)
{
    if (type == SMK_F32 && es == 4) {
        ptrdiff_t i = 0;
        for (; i + 4 <= n; i += 4) {
            v4f f;
            memcpy(&f, p + 4 * i, sizeof f);
            vstore(buf + i, __builtin_convertvector(f, v4d));
        }
        for (; i < n; i++) {
            float f;
            memcpy(&f, p + 4 * i, 4);
            buf[i] = f;
        }
    } else if (type == SMK_F64 && es == 8) {
        memcpy(buf, p, (size_t)n * sizeof(double));
#if SMK_USE_AVX512
    } else if ((type == SMK_F16 || type == SMK_BF16) && es == 2) {
        w_load_small(p, type, n, buf);
#endif
    } else {
        for (ptrdiff_t i = 0; i < n; i++)
            buf[i] = load_one(p + i * es, type);
    }
}

static void load_chunk(const smk_job *job, const char *x, const char *m, ptrdiff_t j0,
                       ptrdiff_t n, double *buf)
{
    load_typed(x + j0 * job->x_es, job->x_es, job->in_type, n, buf);
    if (m) {
        const char *q = m + j0 * job->m_es;
        for (ptrdiff_t i = 0; i < n; i++)
            if (!q[i * job->m_es])
                buf[i] = -INFINITY;
    }
    pad(buf, n);
}

static void store_chunk(const smk_job *job, char *o, ptrdiff_t j0, ptrdiff_t n, double *buf,
                        int post, double scale)
{
    char *p = o + j0 * job->o_es;
    if (post == POST_MUL && job->out_type == SMK_F64 && job->o_es == 8) {
        /* The product stored straight into the output. */
        v4d s = vsplat(scale);
        ptrdiff_t i = 0;
        for (; i + 4 <= n; i += 4) {
            v4d v = vload(buf + i) * s;
            memcpy(p + 8 * i, &v, sizeof v);
        }
        for (; i < n; i++) {
            double v = buf[i] * scale;
            memcpy(p + 8 * i, &v, 8);
        }
        return;
    }
    if (post == POST_MUL) {
        v4d s = vsplat(scale);
        for (ptrdiff_t i = 0; i < n; i += 4)
            vstore(buf + i, vload(buf + i) * s);
    } else if (post == POST_DIV) {
        v4d s = vsplat(scale);
        for (ptrdiff_t i = 0; i < n; i += 4)
            vstore(buf + i, vload(buf + i) / s);
    }
    if (job->out_type == SMK_F32 && job->o_es == 4) {
        ptrdiff_t i = 0;
        for (; i + 4 <= n; i += 4) {
            v4f f = __builtin_convertvector(vload(buf + i), v4f);
            memcpy(p + 4 * i, &f, sizeof f);
        }
        for (; i < n; i++) {
            float f = (float)buf[i];
            memcpy(p + 4 * i, &f, 4);
        }
    } else if (job->out_type == SMK_F64 && job->o_es == 8) {
        memcpy(p, buf, (size_t)n * sizeof(double));
#if SMK_USE_AVX512
    } else if ((job->out_type == SMK_F16 || job->out_type == SMK_BF16) && job->o_es == 2) {
        w_store_small(p, job->out_type, n, buf);
#endif
    } else {
        for (ptrdiff_t i = 0; i < n; i++)
            store_one(p + i * job->o_es, job->out_type, buf[i]);
    }
}

/* ---- the passes over a buffer (n4 a multiple of 4, padded with -inf) ---- */

/* One entry into the first pass's maximum, minimum and NaN flag. */
static inline void stats_one(smk_partial *part, double v)
{
    if (v > part->max)
        part->max = v;
    if (v < part->min)
        part->min = v;
    if (v != v)
        part->has_nan = 1;
}

/* One lane's maximum, minimum and NaN flag of a vector first pass into the partial. */
static inline void stats_lane(smk_partial *part, double max, double min, int nan)
{
    if (max > part->max)
        part->max = max;
    if (min < part->min)
        part->min = min;
    if (nan)
        part->has_nan = 1;
}

static void buf_stats(const double *buf, ptrdiff_t n4, smk_partial *part)
{
    /* The minimum includes the -inf padding and masked entries: such rows are not near
     * (see row_is_near). */
    v4d mx = vsplat(-INFINITY), mn = vsplat(INFINITY);
    v4l nan = {0, 0, 0, 0};
    for (ptrdiff_t i = 0; i < n4; i += 4) {
        v4d x = vload(buf + i);
        mx = vblend(x > mx, x, mx);
        mn = vblend(x < mn, x, mn);
        nan |= (x != x);
    }
    for (int k = 0; k < 4; k++)
        stats_lane(part, mx[k], mn[k], nan[k] != 0);
}

/* Whether every shifted score (x - max) / T of a finite row is at least -depth, from
 * the minimum of the first pass (+inf where a path did not find it: not near). */
static inline int row_is_near(const smk_row *row, double depth)
{
    return row->min <= row->max && (row->min - row->max) * (1.0 / row->temperature) >= -depth;
}

static void buf_count(const double *buf, ptrdiff_t n4, int kind, double top, smk_partial *part)
{
    v4l count = {0, 0, 0, 0};
    for (ptrdiff_t i = 0; i < n4; i += 4) {
        v4d x = vload(buf + i);
        if (kind == KIND_IND_TOP)
            count -= (x == vsplat(top));
        else
            count -= (x > vsplat(-INFINITY)) & (x < vsplat(INFINITY));
    }
    part->count += count[0] + count[1] + count[2] + count[3];
}

/* The shifted score (x - max) / T as hi + lo, for one vector. */
static inline void shifted_v(v4d x, v4d m, double temperature, int scaled, int compensate,
                             int exact_division, v4d *hi, v4d *lo)
{
    v4d d = x - m;
    if (!compensate) {
        *hi = scaled ? d / vsplat(temperature) : d;
        *lo = vsplat(0.0);
        return;
    }
    /* TwoSum (Knuth): d + c == x - m exactly; c is meaningless where d is infinite. */
    v4d virt = d - x;
    v4d c = (x - (d - virt)) + (-m - virt);
    v4l finite = d > vsplat(-INFINITY);
    c = vblend(finite, c, vsplat(0.0));
    if (!scaled) {
        *hi = d;
        *lo = c;
        return;
    }
    v4d t = vsplat(temperature);
    v4d q = d / t;
    if (exact_division) {
        v4l safe = q > vsplat(-0x1p996);
        v4d qs = vblend(safe, q, vsplat(0.0));
        v4d ds = vblend(safe, d, vsplat(0.0));
#if SMK_USE_FMA
        v4d remainder = (v4d)_mm256_fnmadd_pd((__m256d)qs, (__m256d)t, (__m256d)ds);
#else
        /* Dekker's exact product q * t = p + err, with Veltkamp's splitting. */
        const v4d split = vsplat(134217729.0);
        v4d p = qs * t;
        v4d sq = split * qs, st = split * t;
        v4d qh = sq - (sq - qs), ql = qs - qh;
        v4d th = st - (st - t), tl = t - th;
        v4d err = ((qh * th - p) + qh * tl + ql * th) + ql * tl;
        v4d remainder = (ds - p) - err;
#endif
        *lo = vblend(safe, (remainder + c) / t, vsplat(0.0));
    } else {
        *lo = c / t;
    }
    *hi = q;
}

static inline void shifted(v4d x, double top, double temperature, int scaled, int compensate,
                           int exact_division, v4d *hi, v4d *lo)
{
    shifted_v(x, vsplat(top), temperature, scaled, compensate, exact_division, hi, lo);
}

/* shifted, for a row that need not be near: x - max overflows for some x >= -DBL_MAX
 * only where max > 2^969, and a temperature above 1 may bring (x - max) / T back into
 * the range. Such rows take (x / 2 - max / 2) / (T / 2), the same quotient (halving is
 * exact at these magnitudes; for a subnormal x its rounding is far below
 * ulp(max / 2)), with the same compensation, halved. */
static inline void shifted_far(v4d x, double top, double temperature, int scaled,
                               int compensate, int exact_division, v4d *hi, v4d *lo)
{
    if (scaled && temperature > 1.0 && top > 0x1p969)
        shifted_v(x * vsplat(0.5), vsplat(0.5 * top), 0.5 * temperature, scaled, compensate,
                  exact_division, hi, lo);
    else
        shifted_v(x, vsplat(top), temperature, scaled, compensate, exact_division, hi, lo);
}

/* Sum of exp over the entries below the maximum (hi + lo) and count of those at it;
 * four vectors at a time, each with its own (compensated) sum. near: every shifted
 * score >= -700 (see vexp_near); plain: softmax without the row statistics, where the
 * entries at the maximum are summed with the others (their exp is exactly 1). */
static inline __attribute__((always_inline)) void
sum_n(int cnt, int near, int plain, const double *in, double *out, const smk_job *job,
      const smk_row *row, v4d *s, v4d *c, v4l *count)
{
    double top = row->max, temperature = row->temperature;
    int scaled = temperature != 1.0, comp = job->compensate;
    int exact = temperature < 0x1p996;
    v4d x[VEXP_MAX], hi[VEXP_MAX], lo[VEXP_MAX], e[VEXP_MAX];
    EACH_V x[k] = vload(in + 4 * k);
    if (near) /* then no x - max overflows */
        EACH_V shifted(x[k], top, temperature, scaled, comp, exact, &hi[k], &lo[k]);
    else
        EACH_V shifted_far(x[k], top, temperature, scaled, comp, exact, &hi[k], &lo[k]);
    vexp_near(cnt, near, hi, lo, comp, e);
    EACH_V {
        if (out)
            vstore(out + 4 * k, e[k]);
        v4d ek = e[k];
        if (!plain) {
            v4l is_top = x[k] == vsplat(top);
            count[k] -= is_top;
            ek = vblend(is_top, vsplat(0.0), ek);
        }
        if (comp) {
            v4d t = s[k] + ek, bp = t - s[k];
            c[k] += (s[k] - (t - bp)) + (ek - bp);
            s[k] = t;
        } else {
            s[k] += ek;
        }
    }
}

/* The horizontal sums of sum_n's accumulators, added to part. */
static void add_lanes(const v4d *s, const v4d *c, const v4l *count, smk_partial *part)
{
    for (int v = 0; v < VEXP_MAX; v++)
        for (int k = 0; k < 4; k++) {
            double t = part->hi + s[v][k], bp = t - part->hi;
            part->lo += ((part->hi - (t - bp)) + (s[v][k] - bp)) + c[v][k];
            part->hi = t;
            part->count += count[v][k];
        }
}

/* exp of in[0 .. n4 - 1] summed into part (with out, also stored there). */
static inline __attribute__((always_inline)) void
buf_sum_impl(int near, int plain, const double *in, double *out, ptrdiff_t n4,
             const smk_job *job, const smk_row *row, smk_partial *part)
{
    v4d s[VEXP_MAX], c[VEXP_MAX];
    v4l count[VEXP_MAX];
    for (int k = 0; k < VEXP_MAX; k++) {
        s[k] = c[k] = vsplat(0.0);
        count[k] = (v4l){0, 0, 0, 0};
    }
    ptrdiff_t i = 0;
    for (; i + 4 * VEXP_MAX <= n4; i += 4 * VEXP_MAX)
        sum_n(VEXP_MAX, near, plain, in + i, out ? out + i : NULL, job, row, s, c, count);
    for (; i < n4; i += 4)
        sum_n(1, near, plain, in + i, out ? out + i : NULL, job, row, s, c, count);
    add_lanes(s, c, count, part);
}

/* CALL(N, P) with compile-time constants equal to the flags near and plain: each
 * combination is a copy of the inlined loop specialised for it. */
#define WITH_CONSTANT_NEAR_PLAIN(near, plain, CALL)                                        \
    do {                                                                                   \
        if (near) {                                                                        \
            if (plain) CALL(1, 1); else CALL(1, 0);                                        \
        } else {                                                                           \
            if (plain) CALL(0, 1); else CALL(0, 0);                                        \
        }                                                                                  \
    } while (0)

/* n entries of buf, padded with -inf to round4(n). The pad lanes are never near: the
 * row's minimum may come from a first pass that saw no padding (the float32 path, a
 * whole row before its blocks), and vexp_near would turn -inf into NaN. */
static void buf_sum(double *buf, ptrdiff_t n, const smk_job *job, const smk_row *row,
                    int store_exp, smk_partial *part)
{
    ptrdiff_t n4 = round4(n);
    int near = n4 == n && row_is_near(row, 700.0);
    int plain = job->op == SMK_SOFTMAX && !(job->l_es && row->l);
    double *out = store_exp ? buf : NULL;
#define BUF_SUM_CALL(N, P) buf_sum_impl(N, P, buf, out, n4, job, row, part)
    WITH_CONSTANT_NEAR_PLAIN(near, plain, BUF_SUM_CALL);
#undef BUF_SUM_CALL
}



static void buf_log(double *buf, ptrdiff_t n4, const smk_job *job, const smk_row *row)
{
    double temperature = row->temperature;
    int scaled = temperature != 1.0;
    int exact = temperature < 0x1p996;
    v4d log_total = vsplat(row->log_total);
    for (ptrdiff_t i = 0; i < n4; i += 4) {
        v4d hi, lo;
        shifted_far(vload(buf + i), row->max, temperature, scaled, job->compensate, exact, &hi,
                    &lo);
        vstore(buf + i, (hi - log_total) + lo);
    }
}

/* Rows whose result is an indicator (k entries selected) or a constant. */
static void buf_fill(double *buf, ptrdiff_t n4, const smk_job *job, const smk_row *row)
{
    double on, off;
    if (row->kind == KIND_NAN) {
        for (ptrdiff_t i = 0; i < n4; i++)
            buf[i] = NAN;
        return;
    }
    if (row->kind == KIND_EMPTY) {
        double v = job->op == SMK_SOFTMAX ? 0.0 : -INFINITY;
        for (ptrdiff_t i = 0; i < n4; i++)
            buf[i] = v;
        return;
    }
    if (job->op == SMK_SOFTMAX) {
        on = 1.0 / (double)row->count;
        off = 0.0;
    } else {
        on = -log1p((double)(row->count - 1));
        off = -INFINITY;
    }
    for (ptrdiff_t i = 0; i < n4; i += 4) {
        v4d x = vload(buf + i);
        v4l sel = row->kind == KIND_IND_TOP ? (x == vsplat(row->max))
                                            : ((x > vsplat(-INFINITY)) & (x < vsplat(INFINITY)));
        vstore(buf + i, vblend(sel, vsplat(on), vsplat(off)));
    }
}

/* ---- rows ---- */

static void row_pointers(const smk_job *job, ptrdiff_t r, smk_row *row)
{
    ptrdiff_t xo = 0, oo = 0, mo = 0, to = 0, lo = 0, go = 0, bo = 0;
    for (int d = job->ndim - 1; d >= 0; d--) {
        ptrdiff_t i = r % job->shape[d];
        r /= job->shape[d];
        xo += i * job->xs[d];
        oo += i * job->os[d];
        mo += i * job->ms[d];
        to += i * job->ts[d];
        lo += i * job->ls[d];
        go += i * job->gs[d];
        bo += i * job->bs[d];
    }
    row->bsum = job->bsum ? job->bsum + bo : NULL;
    row->x = job->x + xo;
    row->o = job->o ? job->o + oo : NULL;
    row->m = job->m ? job->m + mo : NULL;
    row->l = job->l ? job->l + lo : NULL;
    double temperature = job->t_value;
    if (job->t)
        memcpy(&temperature, job->t + to, sizeof temperature);
    row->gain = 1.0;
    if (job->g)
        memcpy(&row->gain, job->g + go, sizeof row->gain);
    row->tmode = temperature == 0.0 ? SMK_T_ZERO
                 : temperature == INFINITY ? SMK_T_INF : SMK_T_FINITE;
    row->temperature = row->tmode == SMK_T_FINITE ? temperature : 1.0;
}

static void row_begin(const smk_job *job, ptrdiff_t r, smk_row *row) { row_pointers(job, r, row); }

static void partial_init(smk_partial *p)
{
    p->max = -INFINITY;
    p->min = INFINITY;
    p->hi = p->lo = 0.0;
    p->has_nan = 0;
    p->count = 0;
}

static void row_decide(const smk_job *job, smk_row *row, const smk_partial *p)
{
    (void)job;
    row->max = p->max;
    row->min = p->min;
    row->has_nan = p->has_nan;
    if (p->has_nan)
        row->kind = KIND_NAN;
    else if (p->max == INFINITY)
        row->kind = KIND_IND_TOP;
    else if (p->max == -INFINITY)
        row->kind = KIND_EMPTY;
    else if (row->tmode == SMK_T_ZERO)
        row->kind = KIND_IND_TOP;
    else if (row->tmode == SMK_T_INF)
        row->kind = KIND_IND_FINITE;
    else
        row->kind = KIND_FINITE;
}

/* After phase 2: the normalizer of the row, and its logsumexp. */
static void row_sums(const smk_job *job, smk_row *row, const smk_partial *p)
{
    double lse;
    /* The gain multiplies the indicator and constant rows as it does the others. */
    row->post = row->gain != 1.0 ? POST_MUL : POST_NONE;
    row->scale = row->gain;
    row->count = p->count;
    row->hi = p->hi;
    row->lo = p->lo;
    int stats = job->l_es != 0 && row->l;
    switch (row->kind) {
    case KIND_NAN: lse = NAN; break;
    case KIND_EMPTY: lse = -INFINITY; break;
    case KIND_IND_TOP:
        if (row->max == INFINITY || row->max > 0.0)
            lse = INFINITY;
        else if (row->max < 0.0)
            lse = -INFINITY;
        else
            lse = log1p((double)(p->count - 1));
        break;
    case KIND_IND_FINITE: lse = log1p((double)(p->count - 1)); break;
    default: {
        double count = (double)p->count;
        if (job->op == SMK_SOFTMAX) {
            /* A product by the reciprocal, rounded once more than a quotient: within
             * the float64 bound too, and a division costs several products. */
            double total = (count + p->hi) + p->lo;
            row->post = POST_MUL;
            row->scale = row->gain / total;
        }
        /* softmax needs only the total (log1p costs as much as a short row). */
        row->log_total = job->op == SMK_SOFTMAX && !stats
                             ? 0.0
                             : log1p(((count - 1.0) + p->hi) + p->lo);
        lse = row->max / row->temperature + row->log_total;
    }
    }
    if (job->op == SMK_LOGSUMEXP && row->l && !stats)
        store_one(row->l, job->lse_type, lse);
    if (stats) {
        double pair[2] = {row->kind == KIND_NAN ? NAN : row->max,
                          row->kind == KIND_FINITE ? row->log_total : NAN};
        memcpy(row->l, &pair[0], sizeof(double));
        memcpy(row->l + job->l_es, &pair[1], sizeof(double));
    }
}

/* Phase 3 on a loaded buffer: the output values, then the store. */
static void buf_output(double *buf, ptrdiff_t n, const smk_job *job, smk_row *row,
                       int exp_stored, ptrdiff_t j0)
{
    ptrdiff_t n4 = round4(n);
    int post = POST_NONE;
    if (row->kind != KIND_FINITE) {
        buf_fill(buf, n4, job, row);
        post = row->post;
    } else if (job->op == SMK_SOFTMAX) {
        if (!exp_stored) {
            smk_partial unused;
            partial_init(&unused);
            buf_sum(buf, n, job, row, 1, &unused);
        }
        post = row->post;
    } else {
        buf_log(buf, n4, job, row);
    }
    store_chunk(job, row->o, j0, n, buf, post, row->scale);
}
