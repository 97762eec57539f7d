/* Column mode by streaming the reduced axis (float32 and float64 blocks of up to
 * SMK_STREAM_ROWS rows), and logsumexp with the sums kept block by block.
 *
 * Part of the kernels of kernel_impl.h, which includes it (once per instruction set,
 * see kernel_impl.h); not a header of its own. */
/* ---- float32 column mode by streaming ----
 *
 * nb adjacent rows (entry j of row b at x[j * x_es + 4 b], a column of a C-contiguous
 * matrix) read a matrix row at a time, each pass in order through memory: the rows'
 * maxima, minima and sums are kept in the scratch, eight rows to a vector, and the
 * arithmetic is the float32 row path's for rows within 86 of their maximum (near, see
 * exp8n_near). Returns 0, having written nothing, when a row is not finite or not near:
 * the caller then takes the block by the 32-row path. */
static int f32_stream_block(const smk_job *job, const smk_row *row0, ptrdiff_t nb,
                            double *scratch)
{
    ptrdiff_t n = job->len, groups = nb / 8;
    const char *x = row0->x;
    double temperature = job->t_value;
    int scaled = temperature != 1.0;
    /* The state: top and low (float32), then sums (two v4d per group), counts. */
    float *top = (float *)(void *)scratch, *low = top + nb;
    v4d *sums = (v4d *)(void *)(scratch + nb);
    v8i *counts = (v8i *)(void *)(scratch + 3 * nb);
    for (ptrdiff_t g = 0; g < groups; g++) {
        store8(top + 8 * g, splat8(-INFINITY));
        store8(low + 8 * g, splat8(INFINITY));
    }
    v8i bad = {0, 0, 0, 0, 0, 0, 0, 0};
    for (ptrdiff_t j = 0; j < n; j++) {
        const float *p = (const float *)(const void *)(x + j * job->x_es);
        for (ptrdiff_t g = 0; g < groups; g++) {
            v8f v = load8(p + 8 * g), mx = load8(top + 8 * g), mn = load8(low + 8 * g);
            store8(top + 8 * g, blend8(v > mx, v, mx));
            store8(low + 8 * g, blend8(v < mn, v, mn));
            bad |= v != v;
        }
    }
    v4d inv_t = vsplat(1.0 / temperature);
    for (ptrdiff_t g = 0; g < groups; g++) {
        v8f mx = load8(top + 8 * g), mn = load8(low + 8 * g);
        bad |= (mx == splat8(INFINITY)) | (mx == splat8(-INFINITY));
        v4l far = ~((lo_half(mn) - lo_half(mx)) * inv_t >= vsplat(-86.0)) |
                  ~((hi_half(mn) - hi_half(mx)) * inv_t >= vsplat(-86.0));
        bad |= (v8i)far;
    }
    if (any8(bad))
        return 0;
    int plain = job->op == SMK_SOFTMAX;
    for (ptrdiff_t g = 0; g < groups; g++) {
        sums[2 * g] = sums[2 * g + 1] = vsplat(0.0);
        counts[g] = (v8i){0, 0, 0, 0, 0, 0, 0, 0};
    }
    for (ptrdiff_t j = 0; j < n; j++) {
        const float *p = (const float *)(const void *)(x + j * job->x_es);
        float *o = plain ? (float *)(void *)(row0->o + j * job->o_es) : NULL;
        for (ptrdiff_t g = 0; g < groups; g++) {
            v8f v = load8(p + 8 * g), d, c, rh, sm, sc;
            v8i slow;
            f32_shift s = shift_lanes(load8(top + 8 * g), temperature);
            if (scaled)
                diff8n(1, &s, 1, &v, &d, &c);
            else
                diff8n(1, &s, 0, &v, &d, &c);
            exp8n_near(1, 1, &d, &c, &rh, &sm, &sc, &slow);
            if (!plain) {
                v8i is_top = v == s.top;
                counts[g] -= is_top;
                sc = blend8(is_top, splat8(0.0f), sc);
            }
            v4d ea = vfma(lo_half(sc), lo_half(rh) + lo_half(sm), lo_half(sc));
            v4d eb = vfma(hi_half(sc), hi_half(rh) + hi_half(sm), hi_half(sc));
            if (o)
                store8(o + 8 * g, join8(ea, eb));
            sums[2 * g] += ea;
            sums[2 * g + 1] += eb;
        }
    }
    if (plain) {
        /* Each row's 2^64 / total as two float32 (see f32_scale_out_impl), in place of
         * top and low. */
        for (ptrdiff_t g = 0; g < groups; g++) {
            v8f a, b;
            two_floats(vsplat(0x1p64) / sums[2 * g], vsplat(0x1p64) / sums[2 * g + 1], &a, &b);
            store8(top + 8 * g, a);
            store8(low + 8 * g, b);
        }
        const v8f down = splat8(0x1p-64f);
        for (ptrdiff_t j = 0; j < n; j++) {
            float *o = (float *)(void *)(row0->o + j * job->o_es);
            for (ptrdiff_t g = 0; g < groups; g++) {
                v8f e = load8(o + 8 * g);
                store8(o + 8 * g, fma8(e, load8(top + 8 * g), e * load8(low + 8 * g)) * down);
            }
        }
        return 1;
    }
    /* log_softmax and logsumexp: log1p((count - 1) + sum), in place of the sums. */
    for (ptrdiff_t g = 0; g < groups; g++) {
        v8f count = __builtin_convertvector(counts[g], v8f);
        sums[2 * g] = vlog1p((lo_half(count) - vsplat(1.0)) + sums[2 * g]);
        sums[2 * g + 1] = vlog1p((hi_half(count) - vsplat(1.0)) + sums[2 * g + 1]);
    }
    if (job->op == SMK_LOGSUMEXP) {
        ptrdiff_t ls = job->ls[job->ndim - 1];
        for (ptrdiff_t g = 0; g < groups; g++) {
            v8f mx = load8(top + 8 * g);
            v4d lse[2] = {lo_half(mx) / vsplat(temperature) + sums[2 * g],
                          hi_half(mx) / vsplat(temperature) + sums[2 * g + 1]};
            for (int k = 0; k < 8; k++)
                store_one(row0->l + (8 * g + k) * ls, job->lse_type, lse[k / 4][k % 4]);
        }
        return 1;
    }
    v4d tv = vsplat(temperature);
    for (ptrdiff_t j = 0; j < n; j++) {
        const float *p = (const float *)(const void *)(x + j * job->x_es);
        float *o = (float *)(void *)(row0->o + j * job->o_es);
        for (ptrdiff_t g = 0; g < groups; g++) {
            v8f v = load8(p + 8 * g), mx = load8(top + 8 * g);
            v4d a = lo_half(v) - lo_half(mx), b = hi_half(v) - hi_half(mx);
            if (scaled) {
                a = a / tv;
                b = b / tv;
            }
            store8(o + 8 * g, join8(a - sums[2 * g], b - sums[2 * g + 1]));
        }
    }
    return 1;
}

/* float64 column mode by streaming, as f32_stream_block, with the double path's
 * numerics (see f64_lanes), for rows whose shifted scores are all >= -700. */
static int f64_stream_block(const smk_job *job, const smk_row *row0, ptrdiff_t nb,
                            double *scratch)
{
    ptrdiff_t n = job->len, groups = nb / 4;
    const char *x = row0->x;
    double temperature = job->t_value;
    int scaled = temperature != 1.0, exact = temperature < 0x1p996;
    v4d *top = (v4d *)(void *)scratch, *low = top + groups, *sum = low + groups,
        *comp = sum + groups;
    v4l *count = (v4l *)(void *)(comp + groups);
    for (ptrdiff_t q = 0; q < groups; q++) {
        top[q] = vsplat(-INFINITY);
        low[q] = vsplat(INFINITY);
    }
    v4l bad = {0, 0, 0, 0};
    for (ptrdiff_t j = 0; j < n; j++) {
        const double *p = (const double *)(const void *)(x + j * job->x_es);
        for (ptrdiff_t q = 0; q < groups; q++) {
            v4d v = vload(p + 4 * q);
            top[q] = vblend(v > top[q], v, top[q]);
            low[q] = vblend(v < low[q], v, low[q]);
            bad |= v != v;
        }
    }
    v4d inv_t = vsplat(1.0 / temperature);
    for (ptrdiff_t q = 0; q < groups; q++) {
        bad |= (top[q] == vsplat(INFINITY)) | (top[q] == vsplat(-INFINITY));
        bad |= ~((low[q] - top[q]) * inv_t >= vsplat(-700.0));
    }
    if (bad[0] | bad[1] | bad[2] | bad[3])
        return 0;
    int plain = job->op == SMK_SOFTMAX;
    for (ptrdiff_t q = 0; q < groups; q++) {
        sum[q] = comp[q] = vsplat(0.0);
        count[q] = (v4l){0, 0, 0, 0};
    }
    for (ptrdiff_t j = 0; j < n; j++) {
        const double *p = (const double *)(const void *)(x + j * job->x_es);
        double *o = plain ? (double *)(void *)(row0->o + j * job->o_es) : NULL;
        ptrdiff_t q = 0;
        for (; q < groups; q += VEXP_MAX) {
            int cnt = groups - q < VEXP_MAX ? (int)(groups - q) : VEXP_MAX;
            v4d xv[VEXP_MAX], hi[VEXP_MAX], lo[VEXP_MAX], e[VEXP_MAX];
            for (int k = 0; k < cnt; k++) {
                xv[k] = vload(p + 4 * (q + k));
                shifted_v(xv[k], top[q + k], temperature, scaled, 1, exact, &hi[k], &lo[k]);
            }
            if (cnt == VEXP_MAX)
                vexp_near(VEXP_MAX, 1, hi, lo, 1, e);
            else
                for (int k = 0; k < cnt; k++)
                    vexp_near(1, 1, &hi[k], &lo[k], 1, &e[k]);
            for (int k = 0; k < cnt; k++) {
                v4d ek = e[k];
                if (o)
                    vstore(o + 4 * (q + k), ek);
                if (!plain) {
                    v4l is_top = xv[k] == top[q + k];
                    count[q + k] -= is_top;
                    ek = vblend(is_top, vsplat(0.0), ek);
                }
                v4d t = sum[q + k] + ek, bp = t - sum[q + k];
                comp[q + k] += (sum[q + k] - (t - bp)) + (ek - bp);
                sum[q + k] = t;
            }
        }
    }
    if (plain) {
        for (ptrdiff_t q = 0; q < groups; q++)
            low[q] = vsplat(1.0) / (sum[q] + comp[q]);
        for (ptrdiff_t j = 0; j < n; j++) {
            double *o = (double *)(void *)(row0->o + j * job->o_es);
            for (ptrdiff_t q = 0; q < groups; q++)
                vstore(o + 4 * q, vload(o + 4 * q) * low[q]);
        }
        return 1;
    }
    for (ptrdiff_t q = 0; q < groups; q++) {
        v4d c = {(double)count[q][0], (double)count[q][1], (double)count[q][2],
                 (double)count[q][3]};
        sum[q] = vlog1p(((c - vsplat(1.0)) + sum[q]) + comp[q]);
    }
    if (job->op == SMK_LOGSUMEXP) {
        ptrdiff_t ls = job->ls[job->ndim - 1];
        for (ptrdiff_t q = 0; q < groups; q++) {
            v4d lse = top[q] / vsplat(temperature) + sum[q];
            for (int k = 0; k < 4; k++)
                store_one(row0->l + (4 * q + k) * ls, job->lse_type, lse[k]);
        }
        return 1;
    }
    for (ptrdiff_t j = 0; j < n; j++) {
        const double *p = (const double *)(const void *)(x + j * job->x_es);
        double *o = (double *)(void *)(row0->o + j * job->o_es);
        for (ptrdiff_t q = 0; q < groups; q++) {
            v4d hi, lo;
            shifted_v(vload(p + 4 * q), top[q], temperature, scaled, 1, exact, &hi, &lo);
            vstore(o + 4 * q, (hi - sum[q]) + lo);
        }
    }
    return 1;
}

/* logsumexp with the sum of each block of bsize entries kept (for sampling by a
 * search over the blocks): the exp-and-sum pass taken block by block. The sums are
 * NaN on rows that are not finite (NaN, +inf, every entry -inf). */
static void row_block_sums(const smk_job *job, smk_row *row, double *buf)
{
    ptrdiff_t n = job->len, size = job->bsize;
    smk_partial part, total;
    row_phase(job, row, 1, 0, n, buf, &part);
    row_decide(job, row, &part);
    partial_init(&total);
    total.max = part.max;
    for (ptrdiff_t k = 0, c0 = 0; c0 < n; k++, c0 += size) {
        ptrdiff_t c1 = n - c0 < size ? n : c0 + size;
        double block = NAN;
        if (row->kind == KIND_FINITE) {
            row_phase(job, row, 2, c0, c1, buf, &part);
            block = ((double)part.count + part.hi) + part.lo;
            total.count += part.count;
            add_partial(&total, part.hi);
            total.lo += part.lo;
        }
        memcpy(row->bsum + k * job->b_es, &block, sizeof block);
    }
    row_sums(job, row, &total);
}
